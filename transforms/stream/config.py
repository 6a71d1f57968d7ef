"""What a worker needs to turn a stream into shards (``StreamConfig``) and what it keeps across streams
(``StreamTools``)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.shards import TEMP_DIR
from transforms.pack.packers import PackingSpec
from transforms.read.readers import DEFAULT_BATCH_BYTES
from transforms.recipe.line_dedup import LineDedup
from transforms.recipe.recipes import Recipe
from transforms.recipe.work import RecipeRunner
from transforms.report.progress import ProgressWriter
from transforms.tokenize.encoders import Encoders
from transforms.tokenize.tokenizer import TokenizerSpec


@dataclass(frozen=True)
class StreamConfig:
    """Everything a worker needs to turn a stream into shards (picklable)."""

    output: str
    tokenizer: TokenizerSpec | None  # None: no tokenizing (``tokenmill filter``)
    seq_len: int
    shard_rows: int
    text_field: str = "text"
    id_field: str = "id"
    strict: bool = False
    packing: PackingSpec = PackingSpec()
    batch_bytes: int = DEFAULT_BATCH_BYTES
    progress_dir: str | None = None
    recipe: Recipe | None = None
    emit_documents: bool = False  # write kept documents under documents/
    emit_modified: bool = False  # write the original text of documents a stage changed under modified/
    meta_fields: tuple[str, ...] = ()  # input fields kept in each document's meta
    recipe_processes: int = 1  # processes running the recipe's filters and keys (1: in the worker itself)

    @property
    def dedup(self) -> bool:
        """Whether the recipe deduplicates (two passes with a shuffle of keys between them)."""
        return self.recipe is not None and (self.recipe.dedup.exact or self.recipe.dedup.minhash is not None)

    @property
    def lines(self) -> LineDedup | None:
        """The recipe's line dedup (two passes: the line keys are counted between them), if any."""
        return self.recipe.dedup.lines if self.recipe is not None else None

    @property
    def selects(self) -> bool:
        """Whether selection needs the whole corpus first (cut-points, a budget): two passes with a plan between."""
        return self.recipe is not None and self.recipe.selection is not None and self.recipe.selection.global_pass

    @property
    def staged(self) -> bool:
        """Whether the job runs in two passes (pass 1 stages the kept documents)."""
        return self.dedup or self.selects or self.lines is not None

    @property
    def temp_dir(self) -> str:
        """Where workers write before the commit step renames into place."""
        return f"{self.output.rstrip('/')}/{TEMP_DIR}"


class StreamTools:
    """What a worker keeps across streams: encoders (loaded on first use), the recipe runner, progress."""

    def __init__(self, cfg: StreamConfig, keys: bool = False, recipe: bool = True) -> None:
        self.cfg = cfg
        self.progress = ProgressWriter(cfg.progress_dir)
        wanted = recipe and cfg.recipe is not None
        self.runner = RecipeRunner.obtain(cfg.recipe, cfg.recipe_processes, keys) if wanted else None
        self._encoders: Encoders | None = None

    @property
    def encoders(self) -> Encoders:
        """The tokenizer's encoders (started on first use)."""
        if self._encoders is None:
            self._encoders = Encoders(self.cfg.tokenizer)
        return self._encoders

    def close(self) -> None:
        """Stop the recipe's worker processes."""
        if self.runner is not None:
            self.runner.close()
