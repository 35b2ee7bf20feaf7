from django.urls import path

from webapp.runs import reward_views, views

urlpatterns = [
    path("runs/", views.run_list, name="run-list"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume, name="run-resume"),
    path("runs/<int:run_id>/annotate/", views.run_annotate, name="run-annotate"),
    path("runs/<int:run_id>/archive/", views.run_archive, name="run-archive"),
    path("runs/<int:run_id>/config.yaml", views.run_config_yaml, name="run-config-yaml"),
    path("runs/<int:run_id>/delete/", views.run_delete, name="run-delete"),
    path("checkpoints/<int:checkpoint_id>/", views.checkpoint_detail, name="checkpoint-detail"),
]

urlpatterns += [path("runs/new/", views.run_new, name="run-new"),
                path("runs/new/estimate.json", views.run_estimate, name="run-estimate")]
urlpatterns += [path("workers/", views.worker_list, name="worker-list")]
urlpatterns += [
    path("pipelines/", views.pipeline_list, name="pipeline-list"),
    path("pipelines/new/", views.pipeline_new, name="pipeline-new"),
    path("pipelines/<int:pipeline_id>/status.json", views.pipeline_status, name="pipeline-status"),
    path("pipelines/<int:pipeline_id>/", views.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<int:pipeline_id>/resume/", views.pipeline_resume, name="pipeline-resume"),
    path("pipelines/<int:pipeline_id>/abandon/", views.pipeline_abandon, name="pipeline-abandon"),
]
urlpatterns += [path("projects/<slug:slug>/rewards/", reward_views.reward_list, name="reward-list")]
