/* A segmentation's result in the "Segment a file" card (js/explain_upload.js): the table of each class's size and the
   mask's downloads, from an explanation whose model draws a map (results.sizes, results.colours, downloads). */
import { el } from "./dom.js";

const DOWNLOAD_NAMES = { nifti: "NIfTI (.nii.gz)", png: "PNG (label values)", preview: "PNG (coloured)", seg: "DICOM SEG" };

/* One row per class (the background's too, greyed): its colour, name, volume in ml (area in mm² for a 2D image; "–"
   when the spacing is unknown) and voxel count. */
export function sizeRows(results, volume) {
  const unit = volume ? "ml" : "mm2";
  return results.sizes.map((size, index) => {
    const background = index === 0;
    const swatch = el("span", { class: "class-swatch", "aria-hidden": "true" });
    if (!background) swatch.style.background = results.colours[index];
    const amount = unit in size ? size[unit].toLocaleString(undefined, { maximumFractionDigits: volume ? 2 : 1 }) : "–";
    return el("tr", background ? { class: "muted" } : {}, [
      el("td", {}, [swatch, background && size.label !== "background" ? `${size.label} (background)` : size.label]),
      el("td", { class: "number", text: amount }),
      el("td", { class: "number", text: size.voxels.toLocaleString() }),
    ]);
  });
}

/* "Download the mask: NIfTI (.nii.gz) · DICOM SEG", each a link to GET /api/explanations/{id}/download/?as=. */
export function downloadLinks(downloads) {
  const kinds = Object.keys(downloads || {});
  if (!kinds.length) return ["No mask file to download."];
  const parts = ["Download the mask: "];
  kinds.forEach((kind, index) => {
    if (index) parts.push(" · ");
    parts.push(el("a", { href: downloads[kind], download: "", "data-kind": kind, text: DOWNLOAD_NAMES[kind] || kind }));
  });
  return parts;
}
