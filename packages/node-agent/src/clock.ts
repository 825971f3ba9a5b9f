/** The agent's time: the one Clock of @swarmd/common (see there). */
export { type Clock, systemClock, FakeClock, isAbortError } from '@swarmd/common';
