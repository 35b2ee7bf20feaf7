from django.urls import path

from webapp.compare import views

urlpatterns = [
    path("compare/", views.compare_list, name="compare-list"),
    path("compare/new/", views.compare_new, name="compare-new"),
    path("compare/<int:comparison_id>/", views.compare_detail, name="compare-detail"),
    path("compare/<int:comparison_id>/status.json", views.compare_status, name="compare-status"),
    path("compare/<int:comparison_id>/figures/", views.compare_figures, name="compare-figures"),
    path("compare/<int:comparison_id>/cancel/", views.compare_cancel, name="compare-cancel"),
    path("compare/<int:comparison_id>/preference/", views.compare_preference, name="compare-preference"),
    path("compare/<int:comparison_id>/judge/", views.compare_judge, name="compare-judge"),
    path("compare/<int:comparison_id>/judge/next.json", views.compare_pair, name="compare-pair"),
    path("compare/<int:comparison_id>/judge/verdict/", views.compare_verdict, name="compare-verdict"),
    path("compare/projects/<slug:slug>/ratings/", views.compare_ratings, name="compare-ratings"),
]
