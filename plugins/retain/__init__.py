"""Retain: lifecycle marketing on Airflow and dbt."""
