package blob

import (
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// AWSClient is a client of the AWS SDK for the same bucket, endpoint and
// credentials, for a library that speaks to S3 through that SDK (tusd's S3
// upload store); herd's own requests go through minio-go.
func (s *S3) AWSClient() *s3.Client {
	creds := s.creds
	return s3.New(s3.Options{
		// No redirect is followed, as by herd's own client: a signed
		// request never goes to another host.
		HTTPClient: &http.Client{Transport: http.DefaultTransport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		Region:       s.region,
		BaseEndpoint: aws.String(s.endpoint),
		// An S3-compatible server (MinIO, Ceph, R2...) is addressed by
		// path; AWS by virtual host.
		UsePathStyle: s.custom,
		// Checksums only where the API requires them: S3-compatible
		// servers differ in the newer trailing checksums the SDK sends by
		// default, and each part is signed with its SHA-256 anyway.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			v, err := creds.GetWithContext(nil)
			if err != nil {
				return aws.Credentials{}, err
			}
			return aws.Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken,
				CanExpire: !v.Expiration.IsZero(), Expires: v.Expiration}, nil
		})),
	})
}

// Bucket is the bucket's name; Prefix is what every key is stored under
// ("" or "some/prefix/").
func (s *S3) Bucket() string { return s.bucket }

// Prefix is what every blob key is stored under ("" or "some/prefix/").
func (s *S3) Prefix() string { return s.prefix }
