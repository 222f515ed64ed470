'use strict';

// Fallbacks for stage parameters that have no default, so a deploy without them stops with a
// clear message: ${param:alarmEmail, file(infra/required.js):alarmEmail}. Only evaluated when the
// parameter is missing. (osls prints a thrown error's stack: keep it to the message.)
const fail = (message) => {
  const error = new Error(message);
  error.stack = message;
  throw error;
};

module.exports.alarmEmail = async () =>
  fail(
    'the alarmEmail parameter is required: where CloudWatch alarms are sent (an SNS e-mail ' +
      'subscription, confirmed once). Pass --param="alarmEmail=ops@example.org" (see infra/DEPLOY.md).'
  );

// The WAF stack's region (infra/edge): CLOUDFRONT-scope web ACLs exist only in us-east-1, and a
// --region option would otherwise override provider.region.
module.exports.edgeRegion = async ({ options }) => {
  if (options && options.region && options.region !== 'us-east-1') {
    fail(
      `--region ${options.region}: the WAF stack for CloudFront must be in us-east-1 (AWS creates ` +
        'CLOUDFRONT-scope web ACLs only there). Leave --region out (see infra/DEPLOY.md).'
    );
  }
  return 'us-east-1';
};
