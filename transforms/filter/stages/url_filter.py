"""``url_filter``: datatrove's URLFilter on the URL field the reader kept in the document's input fields."""

from __future__ import annotations

from typing import Any, Mapping

from transforms.filter.stage import KEPT, STRINGS, FilterStage, Stage, StageRule, Verdict


class UrlRule(StageRule):
    """datatrove's URLFilter on the document's URL field; its lists ship inside datatrove, the public-suffix list
    is tldextract's bundled snapshot (never fetched). A document without a URL is dropped with reason
    ``missing_url`` (datatrove would stop on an assertion)."""

    def __init__(self, url_filter: Any, field: str) -> None:
        from datatrove.data import Document

        self.field = field
        self._filter = url_filter
        self._document = Document

    def check(self, text: str, fields: Mapping[str, Any]) -> Verdict:
        """datatrove's verdict on the URL in ``fields``."""
        url = fields.get(self.field)
        if not isinstance(url, str) or not url:
            return Verdict(False, "missing_url")
        result = self._filter.filter(self._document(text=text, id="", metadata={"url": url}))
        return KEPT if result is True else Verdict(False, result[1])


class UrlFilterStage(FilterStage):
    """The ``url_filter`` stage (both engines run datatrove's filter)."""

    name = "url_filter"
    datatrove_class = "datatrove.pipeline.filters.URLFilter"
    params = {
        "soft_word_threshold": 2,
        "extra_domains": None,
        "extra_urls": None,
        "banned_words": None,
        "banned_subwords": None,
        "soft_banned_words": None,
        "use_integrated_lists": True,
        "url_field": "url",
    }
    kinds = {k: STRINGS for k in ("extra_domains", "extra_urls", "banned_words", "banned_subwords",
                                   "soft_banned_words")}
    own_params = ("url_field",)
    doc = ("block listed domains, URLs and words in the document's URL (its input field url_field; datatrove's "
           "lists ship inside datatrove)")
    listed = 6

    def datatrove_filter(self, stage: Stage) -> Any:
        """datatrove's URLFilter with tldextract's bundled public-suffix list (nothing fetched)."""
        from tldextract import TLDExtract

        url_filter = super().datatrove_filter(stage)
        url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
        # loaded now, not on the first document: seconds of list parsing would count against its time limit
        url_filter.download_data()
        url_filter.tldextractor("https://example.org/")
        return url_filter

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """The filter on the document's URL field."""
        return UrlRule(self.datatrove_filter(stage), stage.params["url_field"])


STAGE = UrlFilterStage()
