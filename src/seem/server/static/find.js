// SEEM demo page, "find all" text mode and the "everything" button (after app.js: uses its state, api, render).
// Their masks are shown in the segment list and layer, as the panoptic results are.
"use strict";
function vocabularyField() {
  const v = el.vocab.value.trim();
  return !v || v.toLowerCase() === "coco" ? undefined : v.split(",").map((s) => s.trim()).filter(Boolean);
}
async function findAll(text) {  // every instance of each comma-separated phrase (POST /v1/find)
  if (!state.imageId) return setStatus("open an image first", true);
  const texts = text.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const data = await api("POST", "/v1/find", { image_id: state.imageId, texts });
    state.segments = data.groups.flatMap((g) => g.instances);
    render();
    setStatus(data.groups.map((g) => `${g.phrase}: ${g.instances.length}`).join(" · "));
  } catch (err) { report(err); }
}
$("#everything-go").addEventListener("click", async () => {  // class-agnostic masks (POST /v1/everything)
  if (!state.imageId) return setStatus("open an image first", true);
  const body = { image_id: state.imageId }, vocabulary = vocabularyField();
  if (vocabulary) body.vocabulary = vocabulary;
  try {
    const data = await api("POST", "/v1/everything", body);
    state.segments = data.masks || [];
    render();
    setStatus(`${state.segments.length} masks`);
  } catch (err) { report(err); }
});
