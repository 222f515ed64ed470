'use strict';

// Resolves ${file(infra/web-acl.js)} in serverless.yml: the WAF web ACL that protects the page's
// CloudFront distribution, SKINSCAN_WEB_ACL_ARN, required. A web ACL for CloudFront has scope
// CLOUDFRONT and must live in us-east-1, so it is its own small stack (infra/edge/serverless.yml,
// output WebAclArn); see infra/DEPLOY.md, step 3.
const WEB_ACL = /^arn:aws(-[a-z]+)*:wafv2:us-east-1:\d{12}:global\/webacl\/[\w-]{1,128}\/[0-9a-f-]{36}$/;

// osls prints a thrown error's stack: keep it to the message.
const fail = (message) => {
  const error = new Error(message);
  error.stack = message;
  throw error;
};

module.exports = async () => {
  const arn = (process.env.SKINSCAN_WEB_ACL_ARN || '').trim();
  if (!arn) {
    fail(
      'SKINSCAN_WEB_ACL_ARN is not set. Deploy the WAF stack first (infra/edge, region us-east-1) and ' +
        'export its WebAclArn output, e.g. SKINSCAN_WEB_ACL_ARN=arn:aws:wafv2:us-east-1:123456789012:' +
        'global/webacl/skinscan-dev/<id> (see infra/DEPLOY.md).'
    );
  }
  if (!WEB_ACL.test(arn)) {
    fail(
      `SKINSCAN_WEB_ACL_ARN=${arn} is not the ARN of a CloudFront web ACL ` +
        '(arn:aws:wafv2:us-east-1:<account>:global/webacl/<name>/<id>; scope CLOUDFRONT lives in us-east-1).'
    );
  }
  return arn;
};
