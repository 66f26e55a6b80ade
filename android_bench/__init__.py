"""android_bench: time exported .tflite models on an Android phone or on this machine.

Phone mode drives the user's TFLite/LiteRT ``benchmark_model`` binary over ``adb``; host mode
uses the LiteRT interpreter. Both follow one run plan and write the same results folder
(``results.jsonl`` + summaries). The package knows nothing about how the models were made: it
reads a manifest of task combinations or a folder of .tflite files. See README.md.

Public entry points::

    from android_bench.models import load_model_set
    from android_bench.plan import PlanConfig, Cooldown, CpuProfile
    from android_bench.android import run_android_sweep
    from android_bench.host import run_host_sweep
    from android_bench.summary import write_summaries
    from android_bench.parse import parse_benchmark_output
"""
__version__ = "0.1.0"
