"""The examples' tests run under the repository's pytest settings; keep the stack's debug logs quiet there."""

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
