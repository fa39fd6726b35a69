# Runs the API server (`npm start`), the worker (`npm run worker`) and migrations (`npm run migrate`);
# docker-compose.yml picks the command. TypeScript is run by tsx (a runtime dependency); the one build step
# is the workflow bundle.
FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY . .
# The worker loads the workflows prebuilt (WORKER_WORKFLOW_BUNDLE in docker-compose.yml) rather than
# bundling them at every start: same code, one image.
RUN npm run bundle-workflows -- dist/workflow-bundle.js

# Run as the unprivileged user that ships with the node image.
USER node

EXPOSE 3000 3001
CMD ["npm", "start"]
