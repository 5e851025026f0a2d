// sharp's side of bench/variants.py, with the same arguments as examples/make_variants.rs:
//
//     node make.js INPUT OUTPUT_DIR [thumb:256,display:1280] [webp,jpeg]
//
// The input is read once; each file is its own sharp pipeline on a clone (sharp's way to
// make several outputs from one input), all run at once on sharp's thread pool. Each
// pipeline: auto-orient, fit inside PX x PX without enlarging (sharp's default kernel,
// lanczos3, with libvips' shrink-on-load), quality 80; sharp writes no metadata by default.
"use strict";
const fs = require("fs");
const path = require("path");
const sharp = require("sharp");

async function main() {
  const [input, out, presetArg = "thumb:256,display:1280", formatArg = "webp,jpeg"] =
    process.argv.slice(2);
  if (!input || !out) {
    console.error("usage: node make.js INPUT OUTPUT_DIR [name:px,...] [webp,jpeg]");
    process.exit(2);
  }
  const presets = presetArg.split(",").map((p) => {
    const [name, px] = p.split(":");
    return { name, px: Number(px) };
  });
  const formats = formatArg.split(",");
  const base = sharp(fs.readFileSync(input)).autoOrient();
  const jobs = [];
  for (const { name, px } of presets) {
    for (const format of formats) {
      const file = path.join(out, `${name}.${format}`);
      const resized = base
        .clone()
        .resize(px, px, { fit: "inside", withoutEnlargement: true });
      const encoded = format === "webp" ? resized.webp({ quality: 80 }) : resized.jpeg({ quality: 80 });
      jobs.push(encoded.toFile(file).then((info) => `${file} ${info.width}x${info.height} ${info.size} B`));
    }
  }
  for (const line of await Promise.all(jobs)) {
    console.log(line);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
