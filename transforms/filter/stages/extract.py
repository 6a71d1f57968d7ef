"""``extract``: a document's HTML to plain text, with trafilatura (datatrove's ``Trafilatura`` extractor, FineWeb's) or
resiliparse (DCLM's), in a helper process that stops a pathological page at the stage's ``timeout``.

- ``engine: trafilatura`` (the default: like every stage, the defaults are datatrove's, and FineWeb extracts with it)
  runs datatrove's own ``Trafilatura`` object with its parameters and defaults (``favour_precision=True``,
  ``include_images=False``, ``timeout=1``, ``deduplicate=True``; it calls ``trafilatura.extract`` with
  ``include_comments=False``). ``engine: resiliparse`` (about 15 times faster) calls
  ``resiliparse.extract.html2text.extract_plain_text`` as DCLM built DCLM-Pool: ``main_content=True``, every other
  option at resiliparse's default (mlfoundations/dclm, ``tools/commoncrawl/process_common_crawl_w_ray.py``); the
  defaults are written out here so that a new resiliparse default cannot change a recipe's result silently.
- Determinism (a deviation from datatrove): ``deduplicate=True`` makes trafilatura count every text segment it sees
  in one process-wide LRU cache (``trafilatura.deduplication.LRU_TEST``) and drop segments, or the whole text, seen
  more than twice before, so datatrove's output depends on which documents its process extracted earlier (the
  worker layout). Here the cache is emptied before each document: segments repeated inside one document are still
  removed, and a document's text depends on that document alone (what datatrove gives for it extracted first).
  resiliparse keeps no state between documents.
- Each document costs a round trip to the helper process: lxml and resiliparse spend long stretches in C calls that
  no asynchronous exception can stop, so the process is killed and restarted when one page passes ``timeout``
  seconds (datatrove's approach; the machinery is ``transforms.recipe.limits.KillableCall``, the regex stage's). The
  recipe's ``stage_timeout`` does not apply: the stage's own ``timeout`` does.
- Outcomes: the extracted text (the document is modified by ``extract``), or rejected as ``extract/empty`` (no text
  left, or only white space), ``extract/timeout``, ``extract/error`` (the extractor raised or its process died:
  counted, the run goes on). URLs and dates in ``meta`` are left alone (datatrove passes no URL to trafilatura).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping

from transforms.filter.stage import STRINGS, FilterStage, Stage, StageRule, Verdict
from transforms.recipe.errors import RecipeError
from transforms.recipe.limits import TIMEOUT, HelperError, KillableCall, StageTimeout

TRAFILATURA = "trafilatura"
RESILIPARSE = "resiliparse"
ENGINES = (TRAFILATURA, RESILIPARSE)

EMPTY = "empty"  # no text left after extraction
ERROR = "error"  # the extractor raised, or its process died

TRAFILATURA_PARAMS = {"favour_precision": True, "include_images": False, "deduplicate": True}  # datatrove's
RESILIPARSE_PARAMS = {  # extract_plain_text's options: DCLM's main_content=True, resiliparse 2.0's defaults
    "main_content": True,
    "preserve_formatting": True,
    "list_bullets": True,
    "alt_texts": True,
    "links": False,
    "form_fields": False,
    "noscript": False,
    "comments": True,
    "post_meta": True,
    "hidden_elements": False,
    "skip_elements": None,
}

log = logging.getLogger(__name__)


def trafilatura_extractor(options: Mapping[str, Any]) -> Callable[[str], str | None]:
    """datatrove's Trafilatura extractor with these parameters, trafilatura's dedup cache emptied before each page."""
    from datatrove.pipeline.extractors import Trafilatura
    from trafilatura.deduplication import LRU_TEST

    extractor = Trafilatura(**options)

    def extract(html: str) -> str | None:
        LRU_TEST.clear()
        return extractor.extract(html)

    return extract


def resiliparse_extractor(options: Mapping[str, Any]) -> Callable[[str], str]:
    """resiliparse's ``extract_plain_text`` with these options."""
    from resiliparse.extract.html2text import extract_plain_text

    options = dict(options)
    if options["skip_elements"] is not None:
        options["skip_elements"] = list(options["skip_elements"])
    return functools.partial(extract_plain_text, **options)


BUILDERS = {TRAFILATURA: trafilatura_extractor, RESILIPARSE: resiliparse_extractor}
WARM_UP = ("<html><head><title>t</title></head><body><nav><a href='/'>Home</a></nav><article><h1>A title</h1>"
           + "<p>A sentence of an article, long enough to be taken for its main text.</p>" * 8
           + "</article><footer>Footer</footer></body></html>")


def warm_extractor(engine: str, options: Mapping[str, Any]) -> Callable[[str], str | None]:
    """The engine's extractor, run once on a small page so that its lazy set-up never counts against a document
    (datatrove warms its sandbox up too)."""
    extract = BUILDERS[engine](options)
    extract(WARM_UP)
    return extract


class ExtractRule(StageRule):
    """The extractor in a helper process: each document's text, or why it has none."""

    own_limit = True  # the helper process enforces the stage's timeout (the chain's clock cannot stop a C call)
    batched = True  # a batch's pages go to the helper at once

    def __init__(self, engine: str, options: Mapping[str, Any], timeout: float) -> None:
        self.engine = engine
        build = functools.partial(warm_extractor, engine, dict(options))
        self.extract = KillableCall(build, timeout, f"extract ({engine})")
        self._warned = False

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """The extracted text (kept, modified), or a drop: empty, timeout, error."""
        try:
            return self._verdict(self.extract(text))
        except (StageTimeout, HelperError) as exc:
            return self._verdict(exc)

    def check_many(self, texts: list[str], fields: list[Mapping[str, Any]]) -> list[Verdict]:
        """``check`` of each text, the texts sent to the helper at once (no round trip per document)."""
        return [self._verdict(result) for result in self.extract.map(texts)]

    def _verdict(self, extracted: str | None | Exception) -> Verdict:
        if isinstance(extracted, StageTimeout):
            return Verdict(False, TIMEOUT)
        if isinstance(extracted, HelperError):
            if not self._warned:  # datatrove's habit: the first error is logged, all are counted
                log.warning("extract: %s (documents it fails on are rejected as extract/error; shown once)",
                            extracted)
                self._warned = True
            return Verdict(False, ERROR)
        if not extracted or extracted.isspace():
            return Verdict(False, EMPTY)
        return Verdict(True, text=extracted)

    def close(self) -> None:
        """Stop the helper process."""
        self.extract.close()


class ExtractStage(FilterStage):
    """The ``extract`` stage: datatrove's Trafilatura parameters, resiliparse's options beside them."""

    name = "extract"
    datatrove_class = "datatrove.pipeline.extractors.Trafilatura"
    params = {"engine": TRAFILATURA, **TRAFILATURA_PARAMS, "timeout": 1.0, **RESILIPARSE_PARAMS}
    kinds = {"skip_elements": STRINGS}
    own_params = ("engine", *RESILIPARSE_PARAMS)  # not datatrove's Trafilatura's
    doc = "HTML to plain text with trafilatura (datatrove's, FineWeb's) or resiliparse (DCLM's; faster)"
    listed = 0  # first: the other stages read the text it extracts

    def validate(self, params: dict[str, Any], where: str) -> None:
        """A known engine, a positive timeout, no option of the other engine, include_images off, CSS selectors
        that parse."""
        unset = sorted(k for k, v in params.items() if v is None and k != "skip_elements")
        if unset:
            raise RecipeError(f"{where} (extract): {', '.join(map(repr, unset))} must have a value, not null")
        engine = params["engine"]
        if engine not in ENGINES:
            raise RecipeError(f"{where} (extract.engine): unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
        if not params["timeout"] > 0:
            raise RecipeError(f"{where} (extract.timeout): must be a number of seconds above 0, "
                              f"got {params['timeout']!r}")
        other = RESILIPARSE_PARAMS if engine == TRAFILATURA else TRAFILATURA_PARAMS
        changed = sorted(k for k, v in other.items() if params[k] != v)
        if changed:
            raise RecipeError(f"{where} (extract): {', '.join(map(repr, changed))} only apply to engine "
                              f"{RESILIPARSE if engine == TRAFILATURA else TRAFILATURA}, not {engine}")
        if params["include_images"]:
            raise RecipeError(f"{where} (extract.include_images): not implemented (as in datatrove's Trafilatura)")
        if params["skip_elements"] is not None:
            from resiliparse.extract.html2text import extract_plain_text

            try:
                extract_plain_text("<p>x</p>", skip_elements=list(params["skip_elements"]))
            except Exception as exc:
                raise RecipeError(f"{where} (extract.skip_elements): not a list of CSS selectors resiliparse "
                                  f"can parse ({exc})") from exc

    def options(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The engine's own keyword arguments: datatrove's Trafilatura's, or extract_plain_text's."""
        if params["engine"] == TRAFILATURA:
            return self.datatrove_kwargs(params)
        return {k: params[k] for k in RESILIPARSE_PARAMS}

    def datatrove_filter(self, stage: Stage) -> Any:
        """datatrove's Trafilatura extractor (a pipeline step); datatrove has no resiliparse extractor."""
        if stage.params["engine"] != TRAFILATURA:
            raise NotImplementedError("datatrove has no resiliparse extractor: only engine trafilatura has one")
        return super().datatrove_filter(stage)

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The stage's engine in a helper process, under the stage's own timeout."""
        p = stage.params
        return ExtractRule(p["engine"], self.options(p), p["timeout"])


STAGE = ExtractStage()
