"""One ASGI app for HTTP and websockets, served by daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from webapp.live.routing import websocket_urlpatterns  # noqa: E402
from webapp.wsauth import websocket_stack  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
})
