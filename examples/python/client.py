"""A shop's backend issues a customer token, then acts as that customer — with the `gql` client.

    pip install "gql[httpx]"
    SHARECART_URL=http://127.0.0.1:8000/graphql SHARECART_BACKEND_TOKEN=… SHARECART_SHOP_KEY=… \\
        python examples/python/client.py
"""

from __future__ import annotations

import os

from gql import Client, gql
from gql.transport.httpx import HTTPXTransport

URL = os.environ.get("SHARECART_URL", "http://127.0.0.1:8000/graphql")

ISSUE = gql("""
mutation Issue($input: IssueTokenInput!) {
  issueToken(input: $input) { token expiresAt errors { code field message } }
}""")
CAMPAIGNS = gql("{ campaigns(first: 5) { totalCount edges { node { id title } } } }")
ME = gql("{ mySegment myOrders(first: 5) { totalCount } }")


def client(**headers: str) -> Client:
    # fetch_schema_from_transport stays off: production servers do not answer introspection (docs/security.md)
    return Client(transport=HTTPXTransport(url=URL, headers=headers, timeout=10))


def main() -> dict:
    backend = client(Authorization=f"Bearer {os.environ['SHARECART_BACKEND_TOKEN']}")
    issued = backend.execute(
        ISSUE, variable_values={"input": {"userId": "ann", "roles": ["CUSTOMER"], "ttlSeconds": 900}}
    )["issueToken"]
    if issued["errors"]:  # a refusal: switch on the code (ER-1)
        raise SystemExit(f"refused: {issued['errors']}")
    public = client(**{"X-Shop-Key": os.environ["SHARECART_SHOP_KEY"]})
    campaigns = public.execute(CAMPAIGNS)["campaigns"]
    ann = client(Authorization=f"Bearer {issued['token']}")
    me = ann.execute(ME)
    print(f"{campaigns['totalCount']} campaigns; ann is {me['mySegment']} with {me['myOrders']['totalCount']} orders")
    return me


if __name__ == "__main__":
    main()
