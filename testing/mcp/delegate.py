"""Gets the tokens of an agent acting for a person, for the tests.

Usage: delegate.py ISSUER RESOURCE USER AGENT SECRET
  1. USER signs in at the `portal` client: authorization code with PKCE
     through oidc-provider's development login (any user name), for
     RESOURCE (RFC 8707).
  2. AGENT gets its own token (client credentials) for RESOURCE.
  3. AGENT exchanges them (RFC 8693): the user's token as the subject, its
     own as the actor; the answer is a token for USER with AGENT as `act`.
Prints {"user": ..., "agent": ..., "delegated": ...} (the three access tokens).
"""

import base64
import hashlib
import json
import re
import secrets
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2 as httpx

ISSUER, RESOURCE, USER, AGENT, SECRET = sys.argv[1:6]
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
REDIRECT = "http://127.0.0.1/callback"


def token(client, data, client_id):
    answer = client.post(f"{ISSUER}/token", data=data, auth=(client_id, SECRET))
    if answer.status_code != 200:
        raise SystemExit(f"token endpoint answered {answer.status_code}: {answer.text}")
    return answer.json()["access_token"]


def sign_in(client):
    """The person's side: authorization code + PKCE at `portal`."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "client_id": "portal",
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid tools:call tools:github",
        "resource": RESOURCE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(8),
    }
    answer = client.get(f"{ISSUER}/auth", params=params)
    for _ in range(10):
        location = answer.headers.get("location")
        if location is None:
            raise SystemExit(f"the sign-in stopped at {answer.status_code}: {answer.text[:300]}")
        url = urljoin(ISSUER, location)
        if url.startswith(REDIRECT):
            code = parse_qs(urlparse(url).query)["code"][0]
            break
        if "/interaction/" in url:
            page = client.get(url).text
            prompt = "login" if 'name="login"' in page else "consent"
            form = {"prompt": prompt, "login": USER, "password": "unused"} if prompt == "login" else {"prompt": prompt}
            action = re.search(r'action="([^"]+)"', page).group(1)
            answer = client.post(urljoin(ISSUER, action), data=form)
        else:
            answer = client.get(url)
    else:
        raise SystemExit("the sign-in did not come back with a code")
    return token(
        client,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
         "code_verifier": verifier, "resource": RESOURCE},
        "portal",
    )


with httpx.Client(follow_redirects=False) as client:
    user = sign_in(client)
    agent = token(client, {"grant_type": "client_credentials", "scope": "tools:call tools:github",
                           "resource": RESOURCE}, AGENT)
    delegated = token(
        client,
        {"grant_type": TOKEN_EXCHANGE, "subject_token": user, "subject_token_type": ACCESS_TOKEN,
         "actor_token": agent, "actor_token_type": ACCESS_TOKEN, "resource": RESOURCE,
         "scope": "tools:call tools:github"},
        AGENT,
    )
print(json.dumps({"user": user, "agent": agent, "delegated": delegated}))
