"""GPT-Live (``POST /v1/live/sessions``): the broker as the trusted backend it requires.

- :mod:`.policy`: the ``live:`` section of a policy (models, voices, instructions,
  delegation, what the browser may send, idle and wake rules, the data channel's events);
- :mod:`.enforce`: a browser's session request made into the session sent upstream (pure);
- :mod:`.upstream`: ``POST {url}/live/sessions`` with the real key, per dialect;
- :mod:`.flow`: one creation, from the user's JWT to the SDP answer.
"""
