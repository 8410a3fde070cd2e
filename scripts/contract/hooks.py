"""Schemathesis hooks for scripts/contract.sh: sign in as the account the run is for.

The run may end its own session (logout-all, revoking the current session, an admin
forcing its own sign-out), so the token is fetched again after any 401 and every minute.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["KEEL_CONTRACT_URL"]
EMAIL = os.environ["KEEL_CONTRACT_EMAIL"]
PASSWORD = os.environ["KEEL_CONTRACT_PASSWORD"]


@schemathesis.auth(refresh_interval=60)
class SignIn:
    def get(self, case, ctx):
        answer = requests.post(
            f"{BASE_URL}/api/v1/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
