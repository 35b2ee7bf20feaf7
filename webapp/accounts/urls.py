from django.urls import path

from webapp.accounts import views

urlpatterns = [
    path("accounts/tokens/", views.token_list, name="token-list"),
    path("accounts/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
