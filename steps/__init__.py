"""aideploy.steps"""
