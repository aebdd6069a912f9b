DROP TABLE login_known_clients;
