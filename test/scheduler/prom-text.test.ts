import { describe, expect, it } from 'vitest';
import { readSamples, sumSamples } from '../../lib/scheduler/prom-text.js';

const TEXT = `# HELP vllm:num_requests_waiting Requests waiting
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="small"} 3
vllm:num_requests_waiting{model_name="tiny"} 2 1700000000000
kvwire_engine_kv_handoff_seconds_sum{model_name="small",stage="store"} 0.25
kvwire_engine_kv_handoff_seconds_sum{model_name="small",stage="load"} 0.5
odd{reason="a}b,c=\\"d\\"\\n"} 7
bad{model_name="x"} NaN
plain 4
`;

describe('Prometheus text reader', () => {
  it('sums the series of each named metric, skipping comments and NaN', () => {
    const sums = sumSamples(TEXT, new Set(['vllm:num_requests_waiting', 'bad', 'plain', 'missing']));
    expect(Object.fromEntries(sums)).toEqual({ 'vllm:num_requests_waiting': 5, plain: 4 });
  });

  it('reads labels, quoted braces, commas and escapes included', () => {
    const s = readSamples(TEXT);
    expect(s.find((x) => x.name === 'odd')).toEqual({ name: 'odd', labels: { reason: 'a}b,c="d"\n' }, value: 7 });
    const stages = readSamples(TEXT, new Set(['kvwire_engine_kv_handoff_seconds_sum'])).map((x) => [
      x.labels['stage'],
      x.value,
    ]);
    expect(stages).toEqual([
      ['store', 0.25],
      ['load', 0.5],
    ]);
    expect(readSamples(TEXT, new Set(['plain']))).toEqual([{ name: 'plain', labels: {}, value: 4 }]);
  });
});
