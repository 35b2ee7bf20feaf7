from django.urls import path

from webapp.charts import views

urlpatterns = [
    path("runs/<int:run_id>/metrics.json", views.run_metrics, name="run-metrics"),
    path("runs/<int:run_id>/metrics.<str:fmt>", views.run_metrics_download, name="run-metrics-download"),
    path("runs/overlay/", views.run_overlay, name="run-overlay"),
    path("runs/overlay/data.json", views.run_overlay_data, name="run-overlay-data"),
]
