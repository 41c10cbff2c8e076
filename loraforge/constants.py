"""Names that several modules share: artifacts on disk, metrics and error codes."""

from __future__ import annotations

from enum import Enum


class Artifact(str, Enum):
    """File names inside an iteration folder or a run folder."""

    ADAPTER_WEIGHTS = "adapter_model.safetensors"
    ADAPTER_CONFIG = "adapter_config.json"
    ADAPTER_GGUF = "adapter.gguf"
    METRICS = "metrics.json"
    TRAIN = "train.jsonl"
    HELDOUT = "heldout.jsonl"
    PREDICTIONS = "predictions.jsonl"
    TRAIN_LOG = "train_log.jsonl"
    DATA = "data.jsonl"
    DATA_REPORT = "data_report.json"
    CHAT_TEMPLATE = "chat_template.jinja"
    STATE = "state.json"
    RUN_CONFIG = "config.json"
    FINAL_ADAPTER = "final_adapter"
    SERVER_LOG = "server.log"
    REAL_HELDOUT = "real_heldout.jsonl"  # the user's real requests (--eval-data), copied into the run
    PREDICTIONS_REAL = "predictions_real.jsonl"
    ERROR_ANALYSIS = "error_analysis.json"
    ERROR_ANALYSIS_REAL = "error_analysis_real.json"
    ADAPTER_META = "loraforge.json"  # what loraforge knows of an adapter: task, base model, tools or labels
    HISTORY = "history.jsonl"  # one line per decision of the loop (promoted or not, and why)
    TRAIN_RESULT = "train_result.json"
    PLAN = "plan.json"  # what an iteration does: examples, generation plan, training settings
    WARM_START = "warm_start.json"  # the adapter an iteration's training starts from, and the rows it replays
    EXPORT_REPORT = "export_report.json"
    ACTIVE = "ACTIVE"  # names the adapter in final_adapter/ ("iteration_N" or "base")
    PENDING = "PENDING_APPROVAL"  # names the adapter that waits for `loraforge approve` (--require-approval)
    TRIGGER = "trigger.json"
    CHECKPOINT = "checkpoint.pt"
    REPORT_HTML = "report.html"
    REPORT_MD = "report.md"
    REPORT_FILES = "report_files"  # the report's plots
    FEEDBACK = "feedback.jsonl"  # a feedback run's snapshot of the database rows it trains on
    FEEDBACK_ROWS = "feedback_rows.json"  # and their row ids, marked as trained once the run has finished
    SERVE_SCRIPT = "serve.sh"  # the serving bundle beside an exported adapter: llama-server command,
    MODELFILE = "Modelfile"  # Ollama's Modelfile,
    MODEL_CARD = "README.md"  # and the model card

    def __str__(self) -> str:
        return self.value


class Metric(str, Enum):
    """The names of the scores in metrics.json."""

    EXACT_MATCH = "exact_match"  # tool calling: every call's name and every argument right
    TOOL_NAME_ACCURACY = "tool_name_accuracy"  # tool calling: the right tools, whatever the arguments
    ACCURACY = "accuracy"  # labels
    MACRO_F1 = "macro_f1"  # labels: F1 averaged over the labels present

    def __str__(self) -> str:
        return self.value


# The metrics of each task, its primary one first.
TOOL_METRICS = (Metric.EXACT_MATCH.value, Metric.TOOL_NAME_ACCURACY.value)
LABEL_METRICS = (Metric.ACCURACY.value, Metric.MACRO_F1.value)
ALL_METRICS = TOOL_METRICS + LABEL_METRICS


class ErrorCode(str, Enum):
    """Why a predicted tool call is wrong; one per failed example (BFCL's AST-checker categories)."""

    WRONG_COUNT = "wrong_count"
    WRONG_FUNC_NAME = "wrong_func_name"
    MISSING_REQUIRED = "missing_required"
    UNEXPECTED_PARAM = "unexpected_param"
    TYPE_ERROR = "type_error"
    VALUE_ERROR = "value_error"
    MALFORMED_JSON = "malformed_json"
    NO_CALL = "no_call"
    SPURIOUS_CALL = "spurious_call"

    def __str__(self) -> str:
        return self.value
