"""The Realtime API (``/v1/realtime/…``): client secrets and live calls.

- :mod:`.rules`: its rules in a policy, the policy's top-level keys (:mod:`.fields`,
  :mod:`.fields_ga`), and :mod:`.vocabulary`: that section per dialect;
- :mod:`.session`, :mod:`.request_ga`: requests checked against the schema data;
- :mod:`.enforce`, :mod:`.enforce_ga`: a request made into the session sent upstream
  (pure); :mod:`.drift`: a live call's session outside its policy, and the revert;
- :mod:`.dialects`: the upstream's shapes per dialect; :mod:`.upstream`: its calls
  interface (create, hang up, sideband);
- :mod:`.mint`: client secrets; :mod:`.calls`: live calls; :mod:`.watch`: a call's events.
"""
