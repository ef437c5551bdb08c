"""aideploy.migrations"""
