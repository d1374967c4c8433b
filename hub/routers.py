from rest_framework import routers


class OptionalSlashRouter(routers.DefaultRouter):
    """/api/v1/tenants and /api/v1/tenants/ alike (DRF ≥ 3.15 ignores trailing_slash="/?")."""

    include_root_view = False

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"
