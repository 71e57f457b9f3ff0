"""C2PA manifests with `c2pa-python`: signed into an output's bytes and read back, validated against the configured
chain's root. WebM is left unsigned: C2PA defines no WebM embedding and the SDK cannot hash one for a sidecar."""
from __future__ import annotations

import io
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import c2pa

from composition.credentials.chain import Chain
from composition.credentials.recipe import RECIPE_LABEL, Recipe
from composition.schemas.provenance import Verdict

GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIGNABLE = {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4"}
CHANGED = ("dataHash.mismatch", "bmffHash.mismatch", "boxesHash.mismatch", "collectionHash.mismatch")
INGREDIENT = "source"


class ContentSigner:
    """Signs outputs with one chain (its key, or `hook`: a function that signs bytes with a key held elsewhere);
    reads manifests trusting its root. Blocking: call it off the event loop."""

    def __init__(self, chain: Chain, include_prompt: bool = False,
                 hook: Callable[[bytes], bytes] | None = None) -> None:
        self.chain, self.include_prompt, self.hook = chain, include_prompt, hook
        self.context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                               "trust": {"trust_anchors": chain.anchors.decode()},
                                               "verify": {"verify_trust": True}})
        self.signer().close()  # a bad chain or key fails here, at startup

    def signer(self) -> c2pa.Signer:
        if self.hook is not None:
            return c2pa.Signer.from_callback(self.hook, c2pa.C2paSigningAlg.ES256, self.chain.certs.decode())
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain.certs, self.chain.key, None)
        return c2pa.Signer.from_info(info)

    def sign(self, data: bytes, content_type: str, recipe: Recipe, source: tuple[bytes, str] | None = None) -> bytes:
        """`data` with a manifest: created by a generative model, or (with `source`, the bytes and type of the image
        it was made from, kept as an ingredient with its own manifest if it has one) opened and then edited,
        animated or re-encoded; the recipe as Montage's assertion. A type C2PA cannot sign is returned as it is."""
        if content_type not in SIGNABLE:
            return data
        try:
            return self._signed(data, content_type, recipe, source is not None, source)
        except c2pa.C2paError:
            if source is None:
                raise
            # a source C2PA cannot parse (an upload that decodes yet breaks its format's rules): no ingredient
            return self._signed(data, content_type, recipe, True, None)

    def _signed(self, data: bytes, content_type: str, recipe: Recipe, edited: bool,
                source: tuple[bytes, str] | None) -> bytes:
        with c2pa.Builder(self._manifest(recipe, edited), context=self.context) as builder, self.signer() as signer:
            if source is not None:
                builder.add_ingredient_from_stream(
                    {"title": INGREDIENT, "relationship": "parentOf", "label": INGREDIENT}, source[1],
                    io.BytesIO(source[0]))
            out = io.BytesIO()
            builder.sign(signer, content_type, io.BytesIO(data), out)
        return out.getvalue()

    def verify(self, data: bytes, content_type: str) -> Verdict:
        """The manifest of `data`, validated; an empty verdict without one."""
        try:
            reader = c2pa.Reader.try_create(content_type, io.BytesIO(data), context=self.context)
        except c2pa.C2paError:
            return Verdict(state="Invalid", failures=["manifest.unreadable"])  # C2PA cannot parse the file
        if reader is None:
            return Verdict()
        with reader:
            results = reader.get_validation_results() or {}
            failures = [item["code"] for item in (results.get("activeManifest") or {}).get("failure", [])]
            return Verdict(state=reader.get_validation_state(), failures=failures,
                           changed=any(code.endswith(CHANGED) for code in failures),
                           manifest=reader.get_active_manifest())

    def _manifest(self, recipe: Recipe, derived: bool) -> dict[str, Any]:
        if not derived:
            actions = [{"action": "c2pa.created", "digitalSourceType": GENERATED, "softwareAgent": _agent()}]
        else:
            done = "c2pa.transcoded" if recipe.parent else "c2pa.edited"
            actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [INGREDIENT]}},
                       {"action": done, "digitalSourceType": GENERATED, "softwareAgent": _agent()}]
        return {"claim_generator_info": [_agent()], "title": f"montage-{recipe.family}-{recipe.seed}.{recipe.format}",
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}},
                               {"label": RECIPE_LABEL, "data": recipe.manifest_data(self.include_prompt)}]}


def _agent() -> dict[str, str]:
    return {"name": "Montage", "version": version("montage")}
