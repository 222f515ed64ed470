'use strict';

// Resolves ${file(infra/image-uri.js)} in serverless.yml: the function image is
// SKINSCAN_IMAGE_URI (the image pushed to ECR), required, never a default.
const ECR_IMAGE = /^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?\/[a-z0-9._\/-]+(:[\w.-]{1,128}|@sha256:[a-f0-9]{64})$/;

// osls prints a thrown error's stack: keep it to the message.
const fail = (message) => {
  const error = new Error(message);
  error.stack = message;
  throw error;
};

module.exports = async () => {
  const uri = (process.env.SKINSCAN_IMAGE_URI || '').trim();
  if (!uri) {
    fail(
      'SKINSCAN_IMAGE_URI is not set. Export the pushed image, e.g. ' +
        'SKINSCAN_IMAGE_URI=123456789012.dkr.ecr.eu-west-1.amazonaws.com/skinscan@sha256:<digest> ' +
        '(see infra/DEPLOY.md).'
    );
  }
  if (!ECR_IMAGE.test(uri)) {
    fail(
      `SKINSCAN_IMAGE_URI=${uri} is not an ECR image URI ` +
        '(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>).'
    );
  }
  return uri;
};
