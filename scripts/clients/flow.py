"""register -> login -> refresh -> /me -> logout through the generated Python client,
unmodified (scripts/contract.sh runs it against a live keel-api).

    python flow.py BASE_URL CLIENT_DIR
"""

import sys
import uuid

sys.path.insert(0, sys.argv[2])

from keel_client import AuthenticatedClient, Client  # noqa: E402
from keel_client.api.auth import (  # noqa: E402
    auth_login,
    auth_logout,
    auth_me,
    auth_refresh,
    auth_register,
)
from keel_client.models import (  # noqa: E402
    Accepted,
    Credentials,
    LogoutRequest,
    Me,
    Problem,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)


def expect(response, status, model):
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(f"flow.py: expected {status} {model.__name__}, got {response.status_code}: {response.content!r}")
    return response.parsed


base_url = sys.argv[1]
email = f"python-{uuid.uuid4().hex[:12]}@example.com"
password = "a python client's password"
anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

expect(
    auth_register.sync_detailed(client=anonymous, body=RegisterRequest(email=email, password=password, full_name="Py")),
    202,
    Accepted,
)
pair = expect(auth_login.sync_detailed(client=anonymous, body=Credentials(email=email, password=password)), 200, TokenPair)
renewed = expect(
    auth_refresh.sync_detailed(client=anonymous, body=RefreshRequest(refresh_token=pair.refresh_token)), 200, TokenPair
)
signed_in = AuthenticatedClient(base_url=base_url, token=renewed.access_token, raise_on_unexpected_status=True)
me = expect(auth_me.sync_detailed(client=signed_in), 200, Me)
if me.email != email or me.full_name != "Py":
    sys.exit(f"flow.py: /auth/me answered {me.to_dict()}, not the account just registered")
logout = auth_logout.sync_detailed(client=signed_in, body=LogoutRequest(refresh_token=renewed.refresh_token))
if logout.status_code != 204:
    sys.exit(f"flow.py: logout answered {logout.status_code}: {logout.content!r}")
expect(auth_me.sync_detailed(client=signed_in), 401, Problem)
expect(auth_refresh.sync_detailed(client=anonymous, body=RefreshRequest(refresh_token=renewed.refresh_token)), 401, Problem)
print(f"flow.py: register, login, refresh, /me and logout passed for {email}")
