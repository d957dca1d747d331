// A shop's backend issues a customer token, then acts as that customer. Types come from graphql-codegen
// (`npm run codegen` writes src/gql/ from ../../schema.graphql and src/operations.graphql).
import { print } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { CampaignsDocument, IssueTokenDocument, MeDocument } from "./gql/graphql.js";

const URL = process.env.SHARECART_URL ?? "http://127.0.0.1:8000/graphql";

async function request<R, V>(doc: TypedDocumentNode<R, V>, variables: V, headers: Record<string, string>): Promise<R> {
  const res = await fetch(URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json", ...headers },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const body = await res.json();
  if (body.errors?.length) throw new Error(`${body.errors[0].extensions?.code}: ${body.errors[0].message}`);
  return body.data as R;
}

const backend = { Authorization: `Bearer ${process.env.SHARECART_BACKEND_TOKEN}` };
const issued = (await request(IssueTokenDocument, { input: { userId: "ann", roles: ["CUSTOMER"], ttlSeconds: 900 } },
  backend)).issueToken;
if (issued.errors.length) throw new Error(`refused: ${issued.errors[0].code}`);
const campaigns = await request(CampaignsDocument, { first: 5 }, { "X-Shop-Key": process.env.SHARECART_SHOP_KEY ?? "" });
const me = await request(MeDocument, {}, { Authorization: `Bearer ${issued.token}` });
console.log(`${campaigns.campaigns.totalCount} campaigns; ann is ${me.mySegment}`);
