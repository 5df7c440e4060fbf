// Builds the page into chat-server/web/ (committed: cargo embeds it, so building the
// server needs no Node): one minified script with the client bundled from source, the
// stylesheet and the HTML. .ci/test builds it again and fails if the result differs.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "../../chat-server/web");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  legalComments: "none",
  alias: { "@layer4/chat-client": join(here, "../js/src/index.ts") },
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(join(here, "src", file), join(out, file));
