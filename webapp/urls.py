from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from webapp import activity, views
from webapp.api.urls import api


def _api_urls():
    """The API authenticates by token itself, so LoginRequiredMiddleware must not redirect it."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback.login_required = False
    return patterns, app_name, namespace


class _Favicon(RedirectView):
    """Browsers ask for /favicon.ico whatever the page links; send them to the static icon."""

    def get_redirect_url(self, *args: object, **kwargs: object) -> str:
        return static("ponder/favicon.svg")  # at request time: the manifest names it after collectstatic


urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", _api_urls()),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", login_not_required(_Favicon.as_view()), name="favicon"),
    path("admin/", admin.site.urls),
    path("", include("webapp.accounts.urls")),
    path("projects/<slug:slug>/activity/", activity.activity_page, name="project-activity"),
    path("", include("webapp.projects.urls")),
    path("", include("webapp.charts.urls")),  # before runs/<id>/: runs/overlay/ is not a run
    path("", include("webapp.runs.urls")),
    path("", include("webapp.datasets.urls")),
    path("", include("webapp.review.urls")),
    path("", include("webapp.compare.urls")),
]
