// The reward editor: Ctrl+Enter tries the source, Tab indents instead of leaving the box.
const source = document.getElementById("reward-source");
source.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    document.getElementById("try-reward").click();
  } else if (e.key === "Tab" && !e.shiftKey) {
    e.preventDefault();
    const start = source.selectionStart;
    source.value = source.value.slice(0, start) + "    " + source.value.slice(source.selectionEnd);
    source.selectionStart = source.selectionEnd = start + 4;
  }
});
