/**
 * Imported first by the test files that SIGKILL a tcp peer while this process has sends in flight
 * to it. UCX 1.13's tcp transport can complete a zero-copy send twice when the peer dies mid-send
 * (`Assertion 'comp->count > 0' failed`, an abort of the whole process; docs/transport.md, "UCX
 * 1.13's tcp abort on peer death"). These files test kvwire's handling of the death, so they run
 * with the documented mitigation (UCX's tcp zero-copy off); set before any UCX context is created,
 * and inherited by the processes they start. An explicit setting in the environment wins.
 */
process.env['UCX_ZCOPY_THRESH'] ??= 'inf';
process.env['UCX_TCP_PUT_ENABLE'] ??= 'n';

export {};
