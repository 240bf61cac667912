"""Data feeding and retraining pipelines. Plain Python: never imports Airflow.

Run ``python -m pipelines --help`` for the command line that DAGs, workers and on-call share.
"""
