"""Retain's Airflow plugin: mounts the provider webhook receiver on the api-server at ``/retain``.

Airflow does not put plugin apps behind its auth manager; the receiver authenticates each request by
the provider's signature (docs/webhooks.md). All logic lives in ``retain.webhooks``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from retain.webhooks import URL_PREFIX, create_app


class RetainPlugin(AirflowPlugin):
    name = "retain"
    fastapi_apps = [
        {
            "app": create_app(airflow_connections=True),
            "url_prefix": URL_PREFIX,
            "name": "Retain provider webhooks",
        }
    ]
