"""Results: the contract between `analyses/` (which write them) and `reports/` (which read them).

The schema (Row with typed coordinates, Result, side data), the vocabulary shared by the library, the analyses
and the reports, reading (with one CorruptResultError line per bad file, version 1 upgraded) and writing
(atomic, byte-deterministic), the tidy results.csv. docs/results-schema.md describes the files.

Torch-free on purpose: reports import this package where no model stack is installed (numpy and networkx are
imported only when side data is written or read).
"""

from mechhybrid.results.files import (atomic_write, iter_result_paths, model_slug, partial_dir, read_result,
                                      read_result_dict, result_files, result_path, write_result)
from mechhybrid.results.schema import (CorruptResultError, DataInfo, Result, Row, SideEntry, check_result,
                                       ordered_coords)
from mechhybrid.results.side import read_side
from mechhybrid.results.table import coord_columns, csv_columns, csv_text, write_results_csv
from mechhybrid.results.upgrade import coords_from_v1, upgrade_v1
from mechhybrid.results.vocabulary import COORD_ORDER, FIXED_COLUMNS, SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "COORD_ORDER", "FIXED_COLUMNS", "Row", "DataInfo", "SideEntry", "Result",
    "CorruptResultError", "check_result", "ordered_coords", "coords_from_v1", "upgrade_v1", "model_slug",
    "result_path", "partial_dir", "atomic_write", "write_result", "read_result", "read_result_dict",
    "result_files", "iter_result_paths", "read_side", "coord_columns", "csv_columns", "csv_text",
    "write_results_csv",
]
