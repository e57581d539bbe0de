// Validate AsyncAPI documents with the AsyncAPI project's own parser.
// Usage: NODE_PATH=clients/js/node_modules node validate_asyncapi.cjs FILE...
// Prints one JSON line per file: {"file", "errors": [diagnostics of severity error], "warnings": n}.
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const parser = new Parser();
  for (const file of process.argv.slice(2)) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"));
    const errors = diagnostics
      .filter((d) => d.severity === 0)
      .map((d) => ({ code: d.code, message: d.message, path: d.path.join("/") }));
    const warnings = diagnostics
      .filter((d) => d.severity !== 0)
      .map((d) => ({ code: d.code, message: d.message, path: d.path.join("/") }));
    console.log(JSON.stringify({ file, parsed: document !== undefined, errors, warnings }));
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
