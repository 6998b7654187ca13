"""Benchmarks for the gateway: throughput against its ceilings and peers, memory under load.

Run with ``python -m bench`` (``make bench``); ``python -m bench --help`` lists
the scenarios and sizes. Every server runs on 127.0.0.1 on ports picked at run
time, all S3 traffic goes to one SeaweedFS started for the run, and every
process started is stopped again, also on Ctrl-C and errors.
"""
