"""The conformance kit for provincial RegionService implementations (`tongban conformance`).

It plays the gateway against a province: it calls RegionService with the gateway's client
certificate, serves the gateway's ReportApplicationStatus when asked, and runs one case per rule
of the southbound contract (`proto/gateway/api/v1/region.proto`):

    command      the command line: options, lines on stdout, JUnit XML, exit status
    runner       a run: the channel, the gateway side, every case in order
    cases        the rules and how each is checked
    probes       what the cases share: settings, made-up applications, calls, error shapes
    gateway_side ReportApplicationStatus, judged by the gateway's own rules
    results      results, lines, the summary and JUnit XML

The region stub (`region_stubs`) is the reference implementation; its `--break` switches each
break one rule, so that the kit's tests show every case can fail.
"""
