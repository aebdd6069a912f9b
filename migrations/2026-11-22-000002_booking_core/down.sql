DROP TABLE booking_idempotency;
DROP TABLE reviews;
DROP TABLE appointments;
DROP TABLE slots;
DROP TABLE doctors;
DROP TABLE clinics;
