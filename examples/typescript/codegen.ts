// graphql-codegen: typed documents for src/operations.graphql from the committed SDL (no introspection:
// production servers refuse it, docs/security.md).
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.graphql"],
  generates: {
    "src/gql/": {
      preset: "client",
      config: { enumsAsTypes: true, scalars: { MinorUnits: "number", DateTime: "string", Date: "string" } },
    },
  },
};

export default config;
