"""The comparison pages: who may see and do what, how many queries they take, and model
text shown as text."""

import json
import re

import pytest
from django.urls import reverse

from tests.compare.conftest import PROMPTS, column_runs, make_checkpoints
from tests.review.conftest import assert_text_not_html
from webapp.compare.models import Comparison, Judgment
from webapp.compare.services import judgment_record, next_pair
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def pages(comparison):
    return [reverse("compare-detail", args=[comparison.pk]), reverse("compare-status", args=[comparison.pk]),
            reverse("compare-judge", args=[comparison.pk]), reverse("compare-pair", args=[comparison.pk]),
            reverse("compare-ratings", args=[comparison.project.slug])]


def verdict(client, comparison, token, winner="left"):
    return client.post(reverse("compare-verdict", args=[comparison.pk]), json.dumps({"token": token, "winner": winner}),
                       content_type="application/json")


def test_members_read_every_page_and_outsiders_get_404(client, personas, compared, viewer):
    for user in (personas.owner, personas.teammate, viewer):
        client.force_login(user)
        for url in pages(compared.comparison) + [reverse("compare-list")]:
            assert client.get(url).status_code == 200, (user, url)
    client.force_login(personas.outsider)
    for url in pages(compared.comparison):
        assert client.get(url).status_code == 404, url
    assert "grpo steps" not in client.get(reverse("compare-list")).content.decode()
    token = next_pair(user=personas.owner, comparison=compared.comparison).token
    assert verdict(client, compared.comparison, token).status_code == 404
    assert client.post(reverse("compare-cancel", args=[compared.comparison.pk])).status_code == 404


def test_owners_and_annotators_judge_viewers_read_only(client, personas, compared, viewer):
    comparison = compared.comparison
    for user, status in ((personas.owner, 200), (personas.teammate, 200), (viewer, 403)):
        client.force_login(user)
        token = next_pair(user=user, comparison=comparison).token
        response = verdict(client, comparison, token)
        assert response.status_code == status, (user, response.content)
    assert Judgment.objects.count() == 2
    client.force_login(viewer)
    assert 'id="read-only"' in client.get(reverse("compare-judge", args=[comparison.pk])).content.decode()


def test_a_verdict_reveals_the_checkpoints_and_mistakes_are_named(client, personas, compared):
    client.force_login(personas.teammate)
    comparison = compared.comparison
    page = client.get(reverse("compare-judge", args=[comparison.pk])).content.decode()
    assert "alpha-grpo" not in page.split('id="pair"')[1]  # blind: no checkpoint before the verdict
    pair = json.loads(client.get(reverse("compare-pair", args=[comparison.pk])).content)
    assert set(pair) == {"token", "question", "reference", "prompt_index", "left", "right", "remaining"}
    assert set(pair["left"]) == {"reasoning", "answer", "completion", "tokens"}
    saved = verdict(client, comparison, pair["token"], "right")
    assert saved.status_code == 200
    assert saved.json()["left"].startswith("alpha-grpo @ step") and saved.json()["mine"] == 1
    assert verdict(client, comparison, pair["token"]).json()["detail"].startswith("pair: you judged")
    assert verdict(client, comparison, pair["token"], "up").json()["detail"].startswith("winner: must be one of")
    bad = client.post(reverse("compare-verdict", args=[comparison.pk]), "[1]", content_type="application/json")
    assert bad.status_code == 400 and "body: must be a JSON object" in bad.json()["detail"]


def test_only_owners_start_and_cancel(client, personas, compared, viewer):
    checkpoints = make_checkpoints(personas.project, 2, run_name="second")
    data = {"checkpoints": [c.pk for c in checkpoints], "prompts": "task:arithmetic", "split": "test",
            "num_prompts": "4", "k": "2", "temperature": "0.6", "top_p": "0.95", "max_new_tokens": "16",
            "rewards": ["format"], "accuracy_reward": "task", "seed": "0", "name": ""}
    for user in (personas.teammate, viewer, personas.outsider):
        client.force_login(user)
        assert client.post(reverse("compare-new"), data).status_code == 400, user  # not their checkpoints to pick
        cancel = client.post(reverse("compare-cancel", args=[compared.comparison.pk]))
        assert cancel.status_code == (404 if user == personas.outsider else 302)
    assert Comparison.objects.count() == 1
    client.force_login(personas.owner)
    response = client.post(reverse("compare-new"), data)
    created = Comparison.objects.exclude(pk=compared.comparison.pk).get()
    assert response["Location"] == reverse("compare-detail", args=[created.pk])
    assert created.k == 2 and created.num_prompts == 4 and created.task == "arithmetic"


def test_the_form_names_the_field_and_preselects_checkpoints(client, personas):
    checkpoints = make_checkpoints(personas.project, 3)
    client.force_login(personas.owner)
    url = reverse("compare-new") + f"?checkpoints={checkpoints[0].pk}&checkpoints={checkpoints[2].pk}"
    page = client.get(url).content.decode()
    boxes = re.findall(r'<input type="checkbox" name="checkpoints" value="(\d+)"[^>]*?( checked)?>', page)
    assert {int(v) for v, checked in boxes if checked} == {checkpoints[0].pk, checkpoints[2].pk}
    assert len(boxes) == 3
    data = {"checkpoints": [checkpoints[0].pk, checkpoints[1].pk], "prompts": "task:arithmetic", "split": "test",
            "num_prompts": "4", "k": "3", "temperature": "0", "top_p": "0.95", "max_new_tokens": "16",
            "accuracy_reward": "task", "seed": "0"}
    response = client.post(reverse("compare-new"), data)
    assert response.status_code == 400
    assert "makes all k samples identical" in response.context["form"].errors["temperature"][0]
    assert not Comparison.objects.exists()


def test_comparison_pages_pin_their_queries(client, personas, compared, django_assert_num_queries):
    comparison = compared.comparison
    client.force_login(personas.owner)
    client.get(reverse("compare-list"))  # warm the session
    # session, user, comparison, columns, results, my judgments, sample means, prompts, samples,
    # judgments (rates), judgments (ratings), position bias, role x2
    with django_assert_num_queries(14):
        assert client.get(reverse("compare-detail", args=[comparison.pk])).status_code == 200
    teammate = next_pair(user=personas.teammate, comparison=comparison)  # someone else judges
    judgment_record(user=personas.teammate, comparison=comparison, token=teammate.token, winner="left")
    with django_assert_num_queries(15):  # + the judged checkpoints of the ratings
        client.get(reverse("compare-detail", args=[comparison.pk]) + "?shown=differ&sample=1")
    # session, user, comparison, ready prompts, columns, my judgments, sides so far, samples, prompt,
    # the ticket, role, count
    with django_assert_num_queries(12):
        client.get(reverse("compare-judge", args=[comparison.pk]))
    token = next_pair(user=personas.owner, comparison=comparison).token
    with django_assert_num_queries(11):  # + the skipped pair's ticket; no role, no count
        client.get(reverse("compare-pair", args=[comparison.pk]) + f"?skip={token}")
    # session, user, project, judgments, their checkpoints, comparisons, their runs
    with django_assert_num_queries(7):
        client.get(reverse("compare-ratings", args=[personas.project.slug]))
    with django_assert_num_queries(5):  # session, user, comparisons, their runs, projects
        client.get(reverse("compare-list"))


def test_model_text_is_text_on_every_compare_page(client, personas, compared):
    comparison = compared.comparison
    client.force_login(personas.owner)
    for sample in range(2):  # sample 0 carries the hostile reasoning; diffs and plain text both
        body = client.get(reverse("compare-detail", args=[comparison.pk]) + f"?sample={sample}").content.decode()
        assert_text_not_html(body)
        assert "<ins>" in body and "<del>" in body  # the word diff is markup around escaped words
    judge = client.get(reverse("compare-judge", args=[comparison.pk])).content.decode()
    assert "<script>window.pwned" not in judge and "\u202e" not in judge.replace("\\u202e", "")
    assert "\\u003Cscript\\u003Ewindow.pwned" in judge  # the pair travels as escaped JSON
    pair = json.loads(client.get(reverse("compare-pair", args=[comparison.pk])).content)
    assert pair["question"].startswith("Question")


def test_a_judge_part_way_through_does_not_see_who_wrote_what(client, personas, compared):
    comparison = compared.comparison
    client.force_login(personas.teammate)
    pair = json.loads(client.get(reverse("compare-pair", args=[comparison.pk])).content)
    assert not {"left_checkpoint", "right_checkpoint", "checkpoint", "sample_id"} & (set(pair) | set(pair["left"]))
    assert verdict(client, comparison, pair["token"]).status_code == 200
    page = client.get(reverse("compare-detail", args=[comparison.pk])).content.decode()
    assert 'id="judging-blind"' in page and "prompt-row" not in page  # the samples side by side are hidden
    assert "Left side chosen in 1 of 1 decided verdicts" in page
    client.force_login(personas.owner)  # who has not started judging reads them
    assert "prompt-row" in client.get(reverse("compare-detail", args=[comparison.pk])).content.decode()


def test_progress_is_reported_as_json(client, personas, compared):
    client.force_login(personas.teammate)
    first, *others = column_runs(compared.comparison)
    Run.objects.filter(pk=first.pk).update(status="running", current_step=4)
    Run.objects.filter(pk__in=[r.pk for r in others]).update(status="queued", current_step=0)
    status = client.get(reverse("compare-status", args=[compared.comparison.pk])).json()
    assert status == {"status": "running", "done": 4, "total": 3 * PROMPTS, "finished": False, "error": ""}


def test_a_column_run_links_to_its_comparison(client, personas, compared):
    client.force_login(personas.teammate)
    run = column_runs(compared.comparison)[0]
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert f'href="{reverse("compare-detail", args=[compared.comparison.pk])}" id="run-comparison"' in page
    other = Run.objects.create(project=personas.project, name="plain", stage="grpo")
    assert 'id="run-comparison"' not in client.get(reverse("run-detail", args=[other.pk])).content.decode()


def test_flips_against_the_first_column_are_counted_and_one_click_away(client, personas, compared):
    import re

    client.force_login(personas.teammate)
    url = reverse("compare-detail", args=[compared.comparison.pk])
    page = client.get(url).content.decode()
    table = page.split('id="flips"')[1].split("</table>")[0]
    # majority answers (cons@k), per prompt, for the three columns: [no, yes, no], [yes, yes, no], [no, no, no]
    counts = re.findall(r'data-flip="(fixed|broken)">(\d+)<', table)
    assert counts == [("fixed", "1"), ("broken", "0"), ("fixed", "0"), ("broken", "1")]
    fixed = client.get(url + "?shown=fixed").content.decode()
    broken = client.get(url + "?shown=broken").content.decode()
    assert re.findall(r'class="card prompt-row" data-index="(\d+)"', fixed) == ["0"]
    assert re.findall(r'class="card prompt-row" data-index="(\d+)"', broken) == ["1"]


def test_blind_verdicts_become_a_preference_dataset(client, personas, compared):
    from webapp.datasets.models import Dataset
    from webapp.datasets.services import export_rows

    comparison = compared.comparison
    client.force_login(personas.owner)
    refused = client.post(reverse("compare-preference", args=[comparison.pk]), {"name": "prefs"}, follow=True)
    assert "no decided verdict yet" in refused.content.decode() and not Dataset.objects.exists()
    for winner in ("left", "right", "tie"):
        pair = next_pair(user=personas.teammate, comparison=comparison)
        judgment_record(user=personas.teammate, comparison=comparison, token=pair.token, winner=winner)
    client.post(reverse("compare-preference", args=[comparison.pk]), {"name": "prefs"})
    dataset = Dataset.objects.get(name="prefs")
    rows = export_rows(dataset)
    assert dataset.kind == "preference" and len(rows) == 2  # the tie is left out
    assert all(r["source"]["judge"] == "bob" and r["chosen"] != r["rejected"] for r in rows)
    client.force_login(personas.teammate)  # annotators judge; owners make datasets
    assert client.post(reverse("compare-preference", args=[comparison.pk]), {"name": "x"}).status_code == 403
