from django.urls import path, register_converter

from webapp.review import views


class SignedIntConverter:
    """Prompt hashes are signed 64-bit integers."""

    regex = "-?[0-9]{1,20}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(SignedIntConverter, "sint")

urlpatterns = [
    path("runs/<int:run_id>/explore/", views.explore_run, name="explore-run"),
    path("runs/<int:run_id>/explore/rollouts.<str:fmt>", views.explore_download, name="explore-download"),
    path("explore/", views.explore_runs, name="explore-runs"),
    path("explore/count.json", views.explore_count, name="explore-count"),
    path("runs/<int:run_id>/release-gate/", views.gate_release, name="gate-release"),
    path("runs/<int:run_id>/rollouts/<int:rollout_id>/tokens/", views.rollout_tokens, name="rollout-tokens"),
    path("runs/<int:run_id>/prompts/<sint:prompt_hash>/", views.prompt_history, name="prompt-history"),
    path("review/", views.queue_list, name="review-queues"),
    path("review/queues/new/", views.queue_new, name="review-queue-new"),
    path("review/queues/<int:queue_id>/", views.queue_detail, name="review-queue"),
    path("review/queues/<int:queue_id>/label/", views.queue_label, name="review-label"),
    path("review/queues/<int:queue_id>/assignees/", views.queue_assignees, name="review-queue-assignees"),
    path("review/queues/<int:queue_id>/items/<int:position>.json", views.queue_item_json, name="review-item"),
    path("review/queues/<int:queue_id>/items/<int:position>/label/", views.queue_item_label,
         name="review-item-label"),
    path("review/queues/<int:queue_id>/dataset/", views.queue_dataset, name="review-queue-dataset"),
    path("review/datasets/from-filter/", views.filter_dataset, name="review-filter-dataset"),
    path("review/datasets/preference-from-filter/", views.filter_preference, name="review-filter-preference"),
]
