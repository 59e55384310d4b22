/** The monotonic clock in nanoseconds, as a number (exact to ~104 days of uptime). */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}
