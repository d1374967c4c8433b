"""ConnectWise Manage (ConnectWise PSA): link, permissions, picklists, tickets and agreement billing.

Plain Python (DESIGN.md rule 1); the API facts are in ../shared/psa/connectwise.md.
"""
