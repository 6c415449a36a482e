// Validate a glTF file with the Khronos glTF validator (npm gltf-validator, installed by scripts/setup.sh
// into tools/node) and print its JSON report on stdout. Usage: node scripts/gltf_validate.cjs FILE.glb
// Exit status: 0 when the report has no errors, 1 when it has, 2 when the file or the validator is missing.
"use strict";
const fs = require("fs");
const path = require("path");

const modulePath = path.join(__dirname, "..", "tools", "node", "node_modules", "gltf-validator");
let validator;
try {
  validator = require(modulePath);
} catch (err) {
  console.error(`gltf-validator is not installed in ${modulePath}: run bash scripts/setup.sh`);
  process.exit(2);
}
const file = process.argv[2];
if (!file || !fs.existsSync(file)) {
  console.error(`no such file: ${file}`);
  process.exit(2);
}
const bytes = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(bytes, { uri: path.basename(file), maxIssues: 100, format: "glb" })
  .then((report) => {
    report.validatorVersion = validator.version();
    console.log(JSON.stringify(report, null, 1));
    process.exit(report.issues.numErrors > 0 ? 1 : 0);
  })
  .catch((err) => {
    console.error(`the validator failed: ${err}`);
    process.exit(2);
  });
