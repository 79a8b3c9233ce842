// Package e2e holds end-to-end tests of whole user journeys: real silo
// processes, real HTTP, and the local AWS emulator.
package e2e
