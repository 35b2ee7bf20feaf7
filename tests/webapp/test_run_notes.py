"""The run page: its settings beside the defaults or another run's, notes rendered safely,
tags and a star that the runs list searches."""

import pytest
from django.urls import reverse

from webapp.runs import services
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def grpo(personas, name, **config):
    return services.run_create(project=personas.project, user=personas.owner, name=name, stage="grpo",
                               config={"model": "starter", "task": "arithmetic", **config}, queue=False)


def test_settings_show_what_differs_from_the_defaults_and_from_another_run(client, personas):
    a, b = grpo(personas, "a", learning_rate=1e-4), grpo(personas, "b", learning_rate=3e-4, group_size=4)
    client.force_login(personas.teammate)
    page = client.get(reverse("run-detail", args=[a.pk])).content.decode()
    assert '<tr class="changed">\n    <td class="mono">learning_rate</td><td class="mono">0.0001</td>' in page
    assert '<td class="mono">group_size</td>' in page  # defaults listed too
    diff = client.get(reverse("run-detail", args=[a.pk]) + f"?diff={b.pk}").content.decode()
    assert diff.count('class="differs"') == 2 and f"Run #{b.pk}" in diff  # learning_rate and group_size
    outsider_run = services.run_create(project=personas.other_project, user=personas.outsider, name="x",
                                       stage="grpo", config={"model": "starter", "task": "arithmetic"}, queue=False)
    hidden = client.get(reverse("run-detail", args=[a.pk]) + f"?diff={outsider_run.pk}").content.decode()
    assert "differs" not in hidden and f"Run #{outsider_run.pk}" not in hidden


def test_notes_are_markdown_made_safe_and_tags_and_stars_are_searched(client, personas):
    run = grpo(personas, "lr sweep 3")
    client.force_login(personas.owner)
    url = reverse("run-annotate", args=[run.pk])
    client.post(url, {"notes": "**Diverged** at step 40 <script>alert(1)</script> [x](javascript:alert(2))",
                      "tags": "LR-sweep, baseline"})
    client.post(url, {"starred": "1"})
    run.refresh_from_db()
    assert run.tags == ["lr-sweep", "baseline"] and run.starred
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    notes = page.split('class="notes">')[1].split("</div>")[0]
    assert "<strong>Diverged</strong>" in notes and "<script>" not in page.split("<textarea")[0].split("<main")[-1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in notes and 'href="javascript' not in page
    assert client.post(url, {"tags": "ok, not/ok"}).status_code == 302
    assert Run.objects.get(pk=run.pk).tags == ["lr-sweep", "baseline"]  # refused whole, nothing changed
    other = grpo(personas, "lr sweep 4")
    listed = client.get(reverse("run-list") + "?q=tag:lr-sweep").content.decode()
    assert "lr sweep 3" in listed and "lr sweep 4" not in listed
    assert "lr sweep 4" not in client.get(reverse("run-list") + "?q=starred").content.decode()
    assert "lr sweep 3" in client.get(reverse("run-list") + "?q=diverged").content.decode()  # notes are searched
    client.force_login(personas.teammate)
    assert client.post(url, {"notes": "mine now"}).status_code == 403
    assert other.notes == ""
