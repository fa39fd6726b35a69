import { randomUUID } from 'node:crypto';
import type { PropertyOccupancy } from '../db/queries/voice-commands';

/**
 * The Alexa events a device's reports consist of: each of the user's properties is an endpoint with
 * one read-only mode, its occupancy today. Smart Home API v3 carries the user's LWA token inside the
 * event (the `scope`), so events are built in the activity, never in the workflow.
 */

const OCCUPANCY = { namespace: 'Alexa.ModeController', instance: 'Property.Occupancy', name: 'mode' } as const;
const OCCUPIED = 'Occupancy.Occupied';
const UNOCCUPIED = 'Occupancy.Unoccupied';

type AlexaEvent = Record<string, unknown>;

const modeValue = (property: PropertyOccupancy) => (property.occupied ? OCCUPIED : UNOCCUPIED);

const text = (value: string) => ({ '@type': 'text', value: { text: value, locale: 'en-US' } });

function header(namespace: string, name: string) {
  return { namespace, name, payloadVersion: '3', messageId: randomUUID() };
}

function occupancyCapability() {
  return {
    type: 'AlexaInterface',
    interface: OCCUPANCY.namespace,
    instance: OCCUPANCY.instance,
    version: '3',
    properties: { supported: [{ name: OCCUPANCY.name }], proactivelyReported: true, retrievable: true, nonControllable: true },
    capabilityResources: { friendlyNames: [text('Occupancy')] },
    configuration: {
      ordered: false,
      supportedModes: [
        { value: OCCUPIED, modeResources: { friendlyNames: [text('Occupied')] } },
        { value: UNOCCUPIED, modeResources: { friendlyNames: [text('Vacant')] } },
      ],
    },
  };
}

/** `Alexa.Discovery.AddOrUpdateReport`: every property as an endpoint, sent once the permission is granted. */
export function addOrUpdateReport(properties: readonly PropertyOccupancy[], lwaAccessToken: string): AlexaEvent {
  return {
    event: {
      header: header('Alexa.Discovery', 'AddOrUpdateReport'),
      payload: {
        endpoints: properties.map((property) => ({
          endpointId: property.id,
          manufacturerName: 'Property management',
          description: 'Whether a guest stays at the property today',
          friendlyName: property.name,
          displayCategories: ['OTHER'],
          capabilities: [occupancyCapability(), { type: 'AlexaInterface', interface: 'Alexa', version: '3' }],
        })),
        scope: { type: 'BearerToken', token: lwaAccessToken },
      },
    },
  };
}

/** `Alexa.ChangeReport` of one property's occupancy, as a change made in the app (a reservation). */
export function changeReport(property: PropertyOccupancy, lwaAccessToken: string, sampledAt: Date): AlexaEvent {
  return {
    event: {
      header: header('Alexa', 'ChangeReport'),
      endpoint: { scope: { type: 'BearerToken', token: lwaAccessToken }, endpointId: property.id },
      payload: {
        change: {
          cause: { type: 'APP_INTERACTION' },
          properties: [{ ...OCCUPANCY, value: modeValue(property), timeOfSample: sampledAt.toISOString(), uncertaintyInMilliseconds: 0 }],
        },
      },
    },
    context: { properties: [] },
  };
}
