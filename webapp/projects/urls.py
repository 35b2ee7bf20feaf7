from django.urls import path

from webapp.projects import views

urlpatterns = [
    path("projects/", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),  # before <slug>: "new" is reserved
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/edit/", views.project_edit, name="project-edit"),
    path("projects/<slug:slug>/members/", views.project_members, name="project-members"),
    path("projects/<slug:slug>/members/add/", views.member_add, name="project-member-add"),
    path("projects/<slug:slug>/members/<int:membership_id>/role/", views.member_role, name="project-member-role"),
    path("projects/<slug:slug>/invitations/<int:invitation_id>/revoke/", views.invitation_revoke,
         name="project-invitation-revoke"),
    path("projects/<slug:slug>/members/<int:membership_id>/remove/", views.member_remove,
         name="project-member-remove"),
]
