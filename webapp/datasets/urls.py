from django.urls import path

from webapp.datasets import views

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/import/", views.dataset_import, name="dataset-import"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:dataset_id>/columns/", views.dataset_columns, name="dataset-columns"),
    path("datasets/<int:dataset_id>.json", views.dataset_status_json, name="dataset-status-json"),
    path("datasets/<int:dataset_id>/download/<str:fmt>/", views.dataset_download, name="dataset-download"),
    path("datasets/<int:dataset_id>/exports/<int:export_id>/", views.dataset_export, name="dataset-export"),
    path("datasets/<int:dataset_id>/exports/<int:export_id>.json", views.dataset_export_json,
         name="dataset-export-json"),
]
