#!/bin/sh
# A shop's backend issues a customer token, then the storefront uses it (docs/security.md).
# Needs: curl, jq. Variables: SHARECART_URL, SHARECART_BACKEND_TOKEN, SHARECART_SHOP_KEY.
set -eu
URL="${SHARECART_URL:-http://127.0.0.1:8000/graphql}"

gql() { # gql TOKEN_HEADER JSON_BODY
  curl -sS --fail-with-body -X POST "$URL" -H "Content-Type: application/json" \
       -H "Accept: application/graphql-response+json" -H "$1" --data "$2"
}

# 1. backend: a 15-minute token for customer "ann" (issueToken caps lifetimes at 24 h)
issued=$(gql "Authorization: Bearer $SHARECART_BACKEND_TOKEN" \
  '{"query":"mutation($i: IssueTokenInput!) { issueToken(input: $i) { token expiresAt errors { code message } } }","variables":{"i":{"userId":"ann","roles":["CUSTOMER"],"ttlSeconds":900}}}')
token=$(printf '%s' "$issued" | jq -er '.data.issueToken.token')
echo "issued a customer token, expires $(printf '%s' "$issued" | jq -r '.data.issueToken.expiresAt')"

# 2. storefront, public: the open campaigns, with the shop's public key
gql "X-Shop-Key: $SHARECART_SHOP_KEY" '{"query":"{ campaigns(first: 5) { totalCount edges { node { id title } } } }"}' \
  | jq -e '.data.campaigns.totalCount' >/dev/null
echo "campaigns listed"

# 3. storefront, signed in as ann
gql "Authorization: Bearer $token" '{"query":"{ mySegment myOrders(first: 5) { totalCount } }"}' \
  | jq -ec '.data'
