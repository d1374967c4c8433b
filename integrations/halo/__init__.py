"""Halo PSA (HaloPSA, HaloITSM, HaloServiceDesk: one REST API).

Plain Python (DESIGN.md rule 1). The API facts and their sources are in
../shared/psa/halo.md; where this package guesses at an UNCONFIRMED point, the comment says so.

    auth.py       client-credentials tokens and the TokenStore the caller lends us
    client.py     HaloClient: one method per Halo endpoint, Halo's error shapes and permissions
    provider.py   HaloProvider: verify, permission probes, companies, contacts, picklists
    ticketing.py  HaloTicketing: tickets and notes (actions)
    billing.py    HaloBilling: software licence counts per client and item
    parse.py      Halo JSON -> the hub's dataclasses
    forms.py      HaloLinkForm (the only module that may import django.forms)
"""
